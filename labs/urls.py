from __future__ import annotations

from django.urls import path

from labs import editor, preview, views

app_name = "labs"

urlpatterns = [
    path("<int:lab_id>/", views.lab_detail, name="lab"),
    path("<int:lab_id>/start/", views.lab_start, name="start"),
    path("<uuid:session_id>/", views.session_page, name="session"),
    path("<uuid:session_id>/reset/", views.session_reset, name="reset"),
    path("<uuid:session_id>/stop/", views.session_stop, name="stop"),
    path("<uuid:session_id>/pause/", views.session_pause, name="pause"),
    path("<uuid:session_id>/resume/", views.session_resume, name="resume"),
    path("<uuid:session_id>/files/", editor.files_list, name="files"),
    path("<uuid:session_id>/files/content/", editor.file_content, name="file-content"),
    path("<uuid:session_id>/files/validate/", editor.file_validate, name="file-validate"),
    path("<uuid:session_id>/port/<int:port>/", preview.port_proxy, name="port"),
    path("<uuid:session_id>/port/<int:port>/<path:path>", preview.port_proxy, name="port-path"),
]
