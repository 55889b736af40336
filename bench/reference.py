"""Same-run reference views: what bare Django does in the same gunicorn, for the ratios.

Each one does the least Django work that answers the same kind of request as the shop's page
it is compared with, and nothing of the shop: no middleware is skipped (they go through the
same stack), no shop code is called.
"""


urlpatterns: list = []
