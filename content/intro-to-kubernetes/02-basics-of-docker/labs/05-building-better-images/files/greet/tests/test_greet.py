import subprocess


def test_default_greeting():
    out = subprocess.run(["python3", "greet.py", "Ann"], capture_output=True, text=True, check=True)
    assert out.stdout == "Hello, Ann!\n"
