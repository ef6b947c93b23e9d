variable "prefix" {
  description = "Short lowercase name that starts every resource name (3-12 letters or digits, starting with a letter). Storage, registry, Cosmos DB and Service Bus names are global, so pick one nobody uses."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.prefix))
    error_message = "The prefix must be 3-12 lowercase letters or digits and start with a letter (storage account and registry names allow nothing else), e.g. \"ionprod\"."
  }
}

variable "location" {
  description = "Azure region, as its short name (e.g. \"westeurope\"): it is also part of the management server's FQDN, <dns label>.<location>.cloudapp.azure.com."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,30}$", var.location))
    error_message = "The location must be a region's short name in lowercase, like \"westeurope\" or \"eastus2\", not a display name like \"West Europe\"."
  }
}

variable "management_dns_label" {
  description = "DNS label of the management server's public IP; empty means \"<prefix>-ion\". The FQDN, and so the name the server certificate must carry, is <label>.<location>.cloudapp.azure.com."
  type        = string
  default     = ""

  validation {
    condition     = var.management_dns_label == "" || can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", var.management_dns_label))
    error_message = "The DNS label must be 3-63 lowercase letters, digits or hyphens, start with a letter and end with a letter or digit."
  }
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (\"1.34\" or \"1.34.4\"); null takes the region's default."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]+(\\.[0-9]+)?$", var.kubernetes_version))
    error_message = "The Kubernetes version must look like \"1.34\" or \"1.34.4\"."
  }
}

variable "node_vm_size" {
  description = "VM size of the AKS nodes that run management, the dispatchers and the modules' Jobs."
  type        = string
  default     = "Standard_D4s_v5"

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.node_vm_size))
    error_message = "The node VM size must be an Azure VM size name such as \"Standard_D4s_v5\"."
  }
}

variable "node_count" {
  description = "Number of AKS nodes (the cluster autoscaler is off; change this to resize)."
  type        = number
  default     = 2

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "The node count must be a whole number from 1 to 100."
  }
}

variable "namespace" {
  description = "Kubernetes namespace the Helm chart installs Ion into; the federated credentials trust service accounts in this namespace only."
  type        = string
  default     = "ion"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "The namespace must be a DNS label: at most 63 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "management_service_account" {
  description = "Service account of the management Deployment (the chart's management.serviceAccount.name)."
  type        = string
  default     = "ion-management"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.management_service_account))
    error_message = "A service account name is a DNS subdomain: lowercase letters, digits, '-' and '.'."
  }
}

variable "job_service_account" {
  description = "Service account of the modules' Job pods (ION_KUBERNETES__JOB_SERVICE_ACCOUNT)."
  type        = string
  default     = "ion-job"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.job_service_account))
    error_message = "A service account name is a DNS subdomain: lowercase letters, digits, '-' and '.'."
  }
}

variable "dispatcher_service_account" {
  description = "Service account every module's dispatcher Deployment runs as (the chart's; ION_KUBERNETES__DISPATCHER_SERVICE_ACCOUNT). Empty: management makes one per module, ion-dispatcher-<module>, and var.modules lists them."
  type        = string
  default     = "ion-dispatcher"

  validation {
    condition     = var.dispatcher_service_account == "" || can(regex("^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", var.dispatcher_service_account))
    error_message = "A service account name is a DNS subdomain: lowercase letters, digits, '-' and '.'."
  }
}

variable "modules" {
  description = "Only when dispatcher_service_account is empty: the modules whose per-module service account (ion-dispatcher-<module>) the dispatcher identity trusts. Workload identity needs one federated credential per service account, and Azure allows 20 per identity, so a module is added here before `ion module create` of it."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.modules : can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", m)) && !strcontains(m, "--")])
    error_message = "Module names are 1-40 lowercase letters, digits or single hyphens, starting with a letter (Ion's module name rule)."
  }

  validation {
    condition     = length(var.modules) <= 19 && length(distinct(var.modules)) == length(var.modules)
    error_message = "At most 19 distinct modules: an Azure identity takes at most 20 federated credentials, and the dispatcher identity may also trust dispatcher_service_account."
  }
}

variable "cosmos_database" {
  description = "Cosmos DB database of Ion's metadata (ION_META__URL=cosmos://<account>/<database>)."
  type        = string
  default     = "ion"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$", var.cosmos_database))
    error_message = "The database name must be 1-255 letters, digits, '_' or '-'."
  }
}

variable "cosmos_serverless" {
  description = "Serverless Cosmos DB (pay per request; one region). false gives provisioned throughput on the database instead."
  type        = bool
  default     = true
}

variable "cosmos_throughput" {
  description = "Provisioned RU/s of the database when cosmos_serverless is false."
  type        = number
  default     = 400

  validation {
    condition     = var.cosmos_throughput >= 400 && var.cosmos_throughput % 100 == 0
    error_message = "Cosmos DB throughput is at least 400 RU/s, in steps of 100."
  }
}

variable "blob_container" {
  description = "Blob container of Ion's files (ION_BLOBS__URL=azblob://<account>/<container>)."
  type        = string
  default     = "ion"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$", var.blob_container))
    error_message = "A container name is 3-63 lowercase letters, digits or single hyphens, starting and ending with a letter or digit."
  }
}

variable "storage_replication" {
  description = "Replication of the storage account: LRS, ZRS, GRS or GZRS."
  type        = string
  default     = "LRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "GZRS"], var.storage_replication)
    error_message = "The storage replication must be one of LRS, ZRS, GRS or GZRS."
  }
}

variable "log_retention_days" {
  description = "Days Log Analytics keeps logs."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "Log Analytics retention is 30 to 730 days."
  }
}

variable "ion_ca_cert_file" {
  description = "PEM file of the CA `ion certs generate` wrote (ca.pem); exported as the ion_ca output."
  type        = string

  validation {
    condition     = fileexists(var.ion_ca_cert_file)
    error_message = "The CA file does not exist: run `ion certs generate --dir certs --host <fqdn>` first (see README.md)."
  }
}

variable "ion_client_cert_file" {
  description = "PEM file of the client certificate `ion certs generate` wrote (client.pem); exported as ion_client_cert."
  type        = string

  validation {
    condition     = fileexists(var.ion_client_cert_file)
    error_message = "The client certificate file does not exist: run `ion certs generate --dir certs --host <fqdn>` first (see README.md)."
  }
}

variable "ion_client_key_file" {
  description = "PEM file of the client key `ion certs generate` wrote (client-key.pem); exported as the sensitive ion_client_key."
  type        = string

  validation {
    condition     = fileexists(var.ion_client_key_file)
    error_message = "The client key file does not exist: run `ion certs generate --dir certs --host <fqdn>` first (see README.md)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
