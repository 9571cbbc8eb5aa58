"""URLs of the approvers' pages under /approvals/ (outside the admin)."""

from django.urls import path

from approvals import pages

app_name = "approvals"

urlpatterns = [
    path("", pages.inbox, name="inbox"),
    path("<int:approval_id>/decide/", pages.decide, name="decide"),
]
