from django.urls import path

from orders import views

app_name = "orders"
urlpatterns = [
    path("payments/<slug:provider>/webhook/", views.payment_webhook, name="payment_webhook"),
]
