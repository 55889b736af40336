"""The shop's URLs plus the benchmarks' reference views, under /_bench/ (BENCH_URLCONF only)."""

from django.urls import include, path

from bench import reference, reference_admin, reference_bot

urlpatterns = [
    path("_bench/", include(reference.urlpatterns)),
    path("_bench/", include(reference_admin.urlpatterns)),
    path("_bench/", include(reference_bot.urlpatterns)),
    path("", include("reseller.urls")),
]
