"""Scale-out system tests: several server processes on one PostgreSQL database
and one S3 bucket (``tests/support/deploy.py``)."""

from tests.support.deploy import deployment  # noqa: F401  (a fixture)
