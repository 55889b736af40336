"""Catalog errors a caller can show to a buyer."""


class CatalogError(Exception):
    """Base class for catalog errors."""


class QuantityOutOfRange(CatalogError):
    """The amount asked for is outside the product's limits."""


class ProductUnavailable(CatalogError):
    """The product or package is not on sale."""
