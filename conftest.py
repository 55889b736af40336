"""Project-wide pytest set-up: the local fakes of every outside party."""

pytest_plugins = ["fakes.fixtures", "fakes.telegram_fixtures"]
