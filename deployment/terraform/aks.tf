resource "azurerm_kubernetes_cluster" "ion" {
  name                = "${local.name}-aks"
  location            = azurerm_resource_group.ion.location
  resource_group_name = azurerm_resource_group.ion.name
  dns_prefix          = local.name
  kubernetes_version  = var.kubernetes_version
  tags                = local.tags

  # Pods get Entra ID tokens for their service account's identity (identity.tf): no secrets.
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  default_node_pool {
    name                        = "system"
    vm_size                     = var.node_vm_size
    node_count                  = var.node_count
    temporary_name_for_rotation = "rotation"
    upgrade_settings {
      max_surge = "10%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  # Required since azurerm 5.0; node pools are the ones declared here.
  node_provisioning_profile {
    mode = "Manual"
  }

  # The chart ships a NetworkPolicy for management, so the cluster enforces them.
  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    load_balancer_sku   = "standard"
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.ion.id
    msi_auth_for_monitoring_enabled = true
  }
}

# Nodes pull Ion's images from the registry with the kubelet's identity.
resource "azurerm_role_assignment" "kubelet_acr_pull" {
  scope                            = azurerm_container_registry.ion.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.ion.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}

# The cluster's cloud provider attaches the static public IP (in this resource group, not the
# node resource group) to the management Service's load balancer.
resource "azurerm_role_assignment" "cluster_network" {
  scope                            = azurerm_resource_group.ion.id
  role_definition_name             = "Network Contributor"
  principal_id                     = azurerm_kubernetes_cluster.ion.identity[0].principal_id
  skip_service_principal_aad_check = true
}
