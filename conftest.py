"""Repository-wide fixtures: the Azure emulators and the Service Bus fake, started on demand."""

from tests.fakes.fixtures import azurite, cosmos_server, servicebus_fake

__all__ = ["azurite", "cosmos_server", "servicebus_fake"]
