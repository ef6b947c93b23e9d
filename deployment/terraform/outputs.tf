# The four outputs the 2018 README read to configure the CLI, then what the Helm step needs.
# No account key or connection string is output: there are none (every backend is Entra ID only).

output "ion_ca" {
  description = "CA certificate (PEM) the CLI trusts the management server with: --cacertfile."
  value       = file(var.ion_ca_cert_file)
}

output "ion_client_cert" {
  description = "Client certificate (PEM) of the CLI: --certfile."
  value       = file(var.ion_client_cert_file)
}

output "ion_client_key" {
  description = "Client private key (PEM) of the CLI: --keyfile."
  value       = file(var.ion_client_key_file)
  sensitive   = true
}

output "ion_fqdn" {
  description = "DNS name of the management server (gRPC on port 9000): --endpoint <fqdn>:9000."
  value       = azurerm_public_ip.management.fqdn
}

output "resource_group_name" {
  description = "Resource group of everything above (az aks get-credentials -g)."
  value       = azurerm_resource_group.ion.name
}

output "aks_cluster_name" {
  description = "AKS cluster name (az aks get-credentials -n)."
  value       = azurerm_kubernetes_cluster.ion.name
}

output "acr_login_server" {
  description = "Registry that Ion's images are pushed to and the nodes pull from."
  value       = azurerm_container_registry.ion.login_server
}

output "namespace" {
  description = "Namespace the chart is installed into (the federated credentials trust it only)."
  value       = var.namespace
}

output "identity_client_ids" {
  description = "Client id of each component's identity: the azure.workload.identity/client-id annotation of its service accounts."
  value       = { for k, v in azurerm_user_assigned_identity.ion : k => v.client_id }
}

output "tenant_id" {
  description = "Entra ID tenant of the identities."
  value       = azurerm_user_assigned_identity.ion["management"].tenant_id
}

output "servicebus_namespace" {
  description = "Fully qualified Service Bus namespace."
  value       = "${azurerm_servicebus_namespace.ion.name}.servicebus.windows.net"
}

output "storage_blob_endpoint" {
  description = "Blob endpoint of the storage account."
  value       = azurerm_storage_account.ion.primary_blob_endpoint
}

output "cosmos_endpoint" {
  description = "Cosmos DB account endpoint."
  value       = azurerm_cosmosdb_account.ion.endpoint
}

output "ion_settings" {
  description = "Ion's backend settings (ION_* environment) for every component on this deployment."
  value       = local.ion_settings
}

output "helm_values" {
  description = "Values for deployment/helm/ion on this cluster: `terraform output -json helm_values > azure-values.json`, then helm upgrade --install -f azure-values.json."
  value       = local.helm_values
}
