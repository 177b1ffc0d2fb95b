"""The pytest plugin cra loads into repository test runs (see `cra_pytest_report`)."""
