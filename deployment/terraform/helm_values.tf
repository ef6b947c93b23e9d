# What the chart deployment/helm/ion needs from this deployment, shaped as its values
# (deployment/helm/ion/values.yaml). The chart is installed by a documented
# `helm upgrade --install` step (README.md), not by a helm_release.

locals {
  # Ion's backend URLs (core/src/ion/core/backends/azure): no credentials in them, and none
  # needed beside them, since every component authenticates with its workload identity.
  ion_settings = {
    ION_BUS__URL   = "servicebus://${azurerm_servicebus_namespace.ion.name}"
    ION_BLOBS__URL = "azblob://${azurerm_storage_account.ion.name}/${azurerm_storage_container.ion.name}"
    ION_META__URL  = "cosmos://${azurerm_cosmosdb_account.ion.name}/${azurerm_cosmosdb_sql_database.ion.name}"
  }

  helm_values = {
    image = {
      registry = azurerm_container_registry.ion.login_server
    }
    backends = {
      bus   = local.ion_settings.ION_BUS__URL
      blobs = local.ion_settings.ION_BLOBS__URL
      meta  = local.ion_settings.ION_META__URL
    }
    credentials = {
      workloadIdentity = {
        enabled            = true
        managementClientId = azurerm_user_assigned_identity.ion["management"].client_id
        dispatcherClientId = azurerm_user_assigned_identity.ion["dispatcher"].client_id
        jobClientId        = azurerm_user_assigned_identity.ion["job"].client_id
      }
    }
    # The Secret made from `ion certs generate`'s files (README.md, step 4).
    tls = {
      existingSecret = "ion-tls"
    }
    management = {
      serviceAccount = {
        name = var.management_service_account
      }
      service = {
        type = "LoadBalancer"
        # The static IP above (its DNS label is the FQDN the server certificate names).
        annotations = {
          "service.beta.kubernetes.io/azure-load-balancer-resource-group" = azurerm_resource_group.ion.name
          "service.beta.kubernetes.io/azure-pip-name"                     = azurerm_public_ip.management.name
        }
      }
    }
    dispatchers = merge(
      {
        sharedServiceAccount  = var.dispatcher_service_account != ""
        jobServiceAccountName = var.job_service_account
      },
      var.dispatcher_service_account != "" ? { serviceAccountName = var.dispatcher_service_account } : {},
    )
  }
}
