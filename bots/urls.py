from django.urls import path

app_name = "bots"
urlpatterns: list = []
