"""Fixtures for tests of (and with) the fakes."""

import pytest

from tests.fakes.servicebus import fake_servicebus_fixture

fake_servicebus = pytest.fixture(fake_servicebus_fixture)
