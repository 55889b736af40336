"""Errors of the bot's conversation: handlers catch them and tell the buyer what happened."""


class BotError(Exception):
    """A buyer's action the bot cannot carry out."""


class StaleAction(BotError):
    """A button or reply that belongs to an earlier step or an earlier purchase."""


class AmountOutOfRange(BotError):
    """A custom amount that is not a whole number within the product's limits."""

    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum
        super().__init__(f"Choose between {minimum} and {maximum}.")
