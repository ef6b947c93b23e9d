terraform {
  required_version = ">= 1.6.0"

  required_providers {
    # CI validates and plans against the 5.x line (the only one it can build), so deployments pin
    # the same line. No random, tls or azapi: names come from var.prefix and the mTLS material from
    # `ion certs generate` (see README.md).
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 5.2"
    }
  }
}

provider "azurerm" {
  features {}

  # Shared keys are off on the storage account, so the provider talks to its data plane with
  # Entra ID too.
  storage_use_azuread = true
}
