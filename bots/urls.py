from django.urls import path

from bots import views

app_name = "bots"
urlpatterns = [
    path("webhook/<str:path_secret>", views.webhook, name="webhook"),
]
