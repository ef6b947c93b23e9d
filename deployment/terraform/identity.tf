# One user-assigned identity per Ion component, trusted (through the cluster's OIDC issuer) by
# the service accounts that component runs as, and given only the data-plane roles it needs.
#
#   component   service accounts (namespace var.namespace)      roles
#   management  var.management_service_account                  Service Bus Data Owner, blobs, Cosmos
#   dispatcher  var.dispatcher_service_account (the chart's),   Service Bus Data Owner, blobs, Cosmos
#               or ion-dispatcher-<module> per var.modules
#   job         var.job_service_account (prepare/commit pods)   Service Bus Data Sender, blobs, Cosmos
#
# Service Bus Data Owner, not Sender + Receiver, for management and the dispatchers: Ion creates
# its topics and subscriptions on demand (management at `ion module create`, each dispatcher at
# start, ion/core/publishing.py when a topic is missing), and only the Owner role may manage
# entities. Job pods only publish, to topics management created at module create.

locals {
  components = {
    management = {
      service_accounts = [var.management_service_account]
      servicebus_role  = "Azure Service Bus Data Owner"
    }
    dispatcher = {
      # One account for every dispatcher (ION_KUBERNETES__DISPATCHER_SERVICE_ACCOUNT), and/or the
      # per-module accounts management makes without it (deployers/kubernetes.py: object_name).
      service_accounts = compact(concat(
        [var.dispatcher_service_account],
        [for m in var.modules : "ion-dispatcher-${m}"],
      ))
      servicebus_role = "Azure Service Bus Data Owner"
    }
    job = {
      service_accounts = [var.job_service_account]
      servicebus_role  = "Azure Service Bus Data Sender"
    }
  }

  federated_credentials = merge([
    for component, c in local.components : {
      for sa in c.service_accounts : "${component}/${sa}" => {
        component = component
        subject   = "system:serviceaccount:${var.namespace}:${sa}"
        name      = "${component}-${sa}"
      }
    }
  ]...)

  # The Cosmos DB Built-in Data Contributor role (data plane: items and metadata reads, no
  # account or container management), assigned on Ion's database only.
  cosmos_data_contributor = "00000000-0000-0000-0000-000000000002"
}

resource "azurerm_user_assigned_identity" "ion" {
  for_each            = local.components
  name                = "${local.name}-${each.key}"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "ion" {
  for_each                  = local.federated_credentials
  name                      = each.value.name
  user_assigned_identity_id = azurerm_user_assigned_identity.ion[each.value.component].id
  audience                  = ["api://AzureADTokenExchange"]
  issuer                    = azurerm_kubernetes_cluster.ion.oidc_issuer_url
  subject                   = each.value.subject
}

resource "azurerm_role_assignment" "servicebus" {
  for_each                         = local.components
  scope                            = azurerm_servicebus_namespace.ion.id
  role_definition_name             = each.value.servicebus_role
  principal_id                     = azurerm_user_assigned_identity.ion[each.key].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# Read and write blobs in Ion's container only.
resource "azurerm_role_assignment" "blobs" {
  for_each                         = local.components
  scope                            = azurerm_storage_container.ion.id
  role_definition_name             = "Storage Blob Data Contributor"
  principal_id                     = azurerm_user_assigned_identity.ion[each.key].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

# The read-only URLs Ion hands out are user delegation SAS; the delegation key is an
# account-level request. The SAS can grant no more than the container role above.
resource "azurerm_role_assignment" "blob_delegator" {
  for_each                         = local.components
  scope                            = azurerm_storage_account.ion.id
  role_definition_name             = "Storage Blob Delegator"
  principal_id                     = azurerm_user_assigned_identity.ion[each.key].principal_id
  principal_type                   = "ServicePrincipal"
  skip_service_principal_aad_check = true
}

resource "azurerm_cosmosdb_sql_role_assignment" "ion" {
  for_each            = local.components
  resource_group_name = azurerm_resource_group.ion.name
  account_name        = azurerm_cosmosdb_account.ion.name
  role_definition_id  = "${azurerm_cosmosdb_account.ion.id}/sqlRoleDefinitions/${local.cosmos_data_contributor}"
  principal_id        = azurerm_user_assigned_identity.ion[each.key].principal_id
  scope               = "${azurerm_cosmosdb_account.ion.id}/dbs/${azurerm_cosmosdb_sql_database.ion.name}"
}
