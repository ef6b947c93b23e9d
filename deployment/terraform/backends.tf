# The three backends Ion's Azure adapters use (core/src/ion/core/backends/azure). None of them
# accepts keys: every component authenticates with its workload identity (identity.tf).

# Service Bus: Ion creates a topic per event type and a subscription per subscribing module
# itself (management at `ion module create`, dispatchers at start, duplicate detection on), so
# only the namespace is declared here. Standard is the lowest tier with topics.
resource "azurerm_servicebus_namespace" "ion" {
  name                = "${local.name}-bus"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  sku                 = "Standard"
  local_auth_enabled  = false
  minimum_tls_version = "1.2"
  tags                = local.tags
}

# Blob Storage: every module's files in one container (ION_BLOBS__URL=azblob://<account>/<container>).
resource "azurerm_storage_account" "ion" {
  name                            = "${var.prefix}ionblobs"
  location                        = azurerm_resource_group.ion.location
  resource_group_name             = azurerm_resource_group.ion.name
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  allow_nested_items_to_be_public = false
  tags                            = local.tags
}

resource "azurerm_storage_container" "ion" {
  name                  = var.blob_container
  storage_account_id    = azurerm_storage_account.ion.id
  container_access_type = "private"
}

# Cosmos DB (SQL API): the containers CosmosMetadataStore opens. It creates them when missing,
# but a data-plane role cannot create databases or containers, so they are declared here with
# the partition keys the store expects.
resource "azurerm_cosmosdb_account" "ion" {
  name                         = "${local.name}-cosmos"
  location                     = azurerm_resource_group.ion.location
  resource_group_name          = azurerm_resource_group.ion.name
  offer_type                   = "Standard"
  kind                         = "GlobalDocumentDB"
  local_authentication_enabled = false
  minimal_tls_version          = "Tls12"
  tags                         = local.tags

  consistency_policy {
    consistency_level = "Session"
  }

  geo_location {
    location          = azurerm_resource_group.ion.location
    failover_priority = 0
  }

  dynamic "capabilities" {
    for_each = var.cosmos_serverless ? ["EnableServerless"] : []
    content {
      name = capabilities.value
    }
  }
}

resource "azurerm_cosmosdb_sql_database" "ion" {
  name                = var.cosmos_database
  resource_group_name = azurerm_resource_group.ion.name
  account_name        = azurerm_cosmosdb_account.ion.name
  throughput          = var.cosmos_serverless ? null : var.cosmos_throughput
}

locals {
  # container -> partition key, as in core/src/ion/core/backends/azure/cosmos.py: one flow (one
  # correlation id) is one partition of documents and attempts; modules are keyed by id.
  cosmos_containers = {
    documents = "/correlationId"
    attempts  = "/correlationId"
    modules   = "/id"
  }
}

resource "azurerm_cosmosdb_sql_container" "ion" {
  for_each            = local.cosmos_containers
  name                = each.key
  resource_group_name = azurerm_resource_group.ion.name
  account_name        = azurerm_cosmosdb_account.ion.name
  database_name       = azurerm_cosmosdb_sql_database.ion.name
  partition_key_paths = [each.value]
}
