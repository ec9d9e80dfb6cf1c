"""What the courses app tells the apps above it (the apps' order: courses/__init__.py).

``class_message_pushes`` is sent after commit with ``pushes``, a list of (channel-layer
group, message) for the students' open lab pages: courses writes class messages, the labs
app owns the sockets that show them (labs/apps.py connects the delivery).
"""

from __future__ import annotations

from django.dispatch import Signal

class_message_pushes = Signal()
