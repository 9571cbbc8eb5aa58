"""The project's URLs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from config.health import healthz
from executions.exporter import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),  # the address `make run` prints
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus (README "Metrics")
    path("admin/", admin.site.urls),
    path("approvals/", include("approvals.urls")),
    # Sign-in for approvers who are not staff (the admin's login refuses them); the pages are in templates/.
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("config.api_urls")),
]

handler404 = "config.rest.not_found"
