# Ion on Azure: an AKS cluster with workload identity, the three backends Ion runs on
# (Service Bus, Blob Storage, Cosmos DB), a registry for Ion's images, logs, and a static public
# IP whose DNS name the management server's certificate carries. The Helm chart is installed
# afterwards from `terraform output -json helm_values` (README.md says why not a helm_release).

locals {
  name      = "${var.prefix}-ion"
  dns_label = var.management_dns_label != "" ? var.management_dns_label : "${var.prefix}-ion"
  # Known before apply, so `ion certs generate --host` can be run first.
  ion_fqdn = "${local.dns_label}.${var.location}.cloudapp.azure.com"
  tags     = merge({ app = "ion", managed-by = "terraform" }, var.tags)
}

resource "azurerm_resource_group" "ion" {
  name     = "${local.name}-rg"
  location = var.location
  tags     = local.tags
}

resource "azurerm_log_analytics_workspace" "ion" {
  name                = "${local.name}-logs"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "ion" {
  name                = "${local.name}-insights"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  workspace_id        = azurerm_log_analytics_workspace.ion.id
  application_type    = "other"
  # Ingestion with Entra ID only: no instrumentation key is accepted on its own.
  local_authentication_enabled = false
  tags                         = local.tags
}

resource "azurerm_container_registry" "ion" {
  name                = "${var.prefix}ionacr"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  sku                 = "Standard"
  # Nodes pull with the kubelet identity (AcrPull below); pushes use `az acr login`.
  admin_enabled = false
  tags          = local.tags
}

# The management server's address. A static IP with a DNS label gives an FQDN that is known
# before apply (local.ion_fqdn), which the server certificate must name.
resource "azurerm_public_ip" "management" {
  name                = "${local.name}-management-ip"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  allocation_method   = "Static"
  sku                 = "Standard"
  domain_name_label   = local.dns_label
  tags                = local.tags

  lifecycle {
    postcondition {
      condition     = self.fqdn == local.ion_fqdn
      error_message = "Azure named the public IP ${self.fqdn}, not ${local.ion_fqdn}: the server certificate from `ion certs generate --host ${local.ion_fqdn}` will not match it. Re-run ion certs generate with --host ${self.fqdn} and update the Secret."
    }
  }
}
