// The Function App on Flex Consumption (FC1, Linux, Python 3.11), running as the user-assigned identity.
// Its app settings are exactly what the code (shared/settings.py), the bindings (%DETECT_SCHEDULE%,
// %SERVICEBUS_QUEUE_NAME%, connection ServiceBusConnection) and the host read;
// tests/infra/test_settings_agreement.py keeps them in step.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string
param applicationInsightsConnectionString string
param serviceBusFullyQualifiedNamespace string
param serviceBusQueueName string
param keyVaultUri string
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int
@allowed([512, 2048, 4096])
param instanceMemoryMB int

param detectSchedule string
param subscriptionSchedule string
param graphBaseUrl string
param salesforceServicePrincipalId string
@allowed(['jwt', 'client_credentials', 'password'])
param salesforceAuthMode string
param salesforceDomain string
param salesforceConsumerKey string
param salesforceUsername string
param notifySender string
param notifyRecipients string
param profilePriority string
param mappingFile string
param salesforceApplicationId string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
  // checkov:skip=CKV_AZURE_225: zone redundancy on Flex Consumption limits the regions; turn on zoneRedundant where available and needed
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: Microsoft Graph must reach the change-notification webhook (function key + clientState)
    // checkov:skip=CKV_AZURE_17: Graph does not present client certificates to webhooks
    // checkov:skip=CKV_AZURE_78: Flex Consumption deploys only from the blob container below (no FTP publishing)
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales out on demand from zero; no fixed instance count
    // checkov:skip=CKV_AZURE_213: health check is an App Service plan feature; Flex Consumption has no instance pool to take out of rotation
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// `@Microsoft.KeyVault(SecretUri=<vault>/secrets/<name>/)`: no version, so the app picks up a rotated
// secret (within a day, or at once on restart).
var secretUri = '${keyVaultUri}secrets'

// Only the credentials of the chosen Salesforce flow are set; shared/settings.py requires them per mode.
var salesforceCredentialSettings = {
  jwt: {
    SALESFORCE_CONSUMER_KEY: salesforceConsumerKey
    SALESFORCE_USERNAME: salesforceUsername
    SALESFORCE_PRIVATE_KEY: '@Microsoft.KeyVault(SecretUri=${secretUri}/salesforce-private-key/)'
  }
  client_credentials: {
    SALESFORCE_CONSUMER_KEY: salesforceConsumerKey
    SALESFORCE_CONSUMER_SECRET: '@Microsoft.KeyVault(SecretUri=${secretUri}/salesforce-consumer-secret/)'
  }
  password: {
    SALESFORCE_USERNAME: salesforceUsername
    SALESFORCE_PASSWORD: '@Microsoft.KeyVault(SecretUri=${secretUri}/salesforce-password/)'
    SALESFORCE_SECURITY_TOKEN: '@Microsoft.KeyVault(SecretUri=${secretUri}/salesforce-security-token/)'
  }
}

// The host's own settings: identity-based storage, Entra-authenticated telemetry, and the identity
// behind the ServiceBusConnection triggers. Flex Consumption takes the runtime and its version from
// functionAppConfig, so FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not set.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
}

var appSettings = {
  DETECT_SCHEDULE: detectSchedule
  SUBSCRIPTION_SCHEDULE: subscriptionSchedule
  GRAPH_BASE_URL: graphBaseUrl
  AZURE_CLIENT_ID: identityClientId
  SALESFORCE_SERVICE_PRINCIPAL_ID: salesforceServicePrincipalId
  SALESFORCE_AUTH_MODE: salesforceAuthMode
  SALESFORCE_DOMAIN: salesforceDomain
  SALESFORCE_API_VERSION: '59.0'
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  SERVICEBUS_QUEUE_NAME: serviceBusQueueName
  STATE_TABLE_ENDPOINT: storageTableEndpoint
  STATE_TABLE_PREFIX: 'provisioning'
  NOTIFY_SENDER: notifySender
  NOTIFY_RECIPIENTS: notifyRecipients
  GRAPH_CLIENT_STATE: '@Microsoft.KeyVault(SecretUri=${secretUri}/graph-client-state/)'
  // The webhook URLs with their function keys, set once the app exists (infra/README.md).
  NOTIFICATION_URL: '@Microsoft.KeyVault(SecretUri=${secretUri}/graph-notification-url/)'
  LIFECYCLE_NOTIFICATION_URL: '@Microsoft.KeyVault(SecretUri=${secretUri}/graph-lifecycle-notification-url/)'
  PROFILE_PRIORITY: profilePriority
  MAPPING_FILE: mappingFile
  SALESFORCE_APPLICATION_ID: salesforceApplicationId
  RETRY_MAX_ATTEMPTS: '6'
  RETRY_BASE_SECONDS: '30'
  RETRY_MAX_SECONDS: '3600'
  // LICENSE_LIMIT_EXCEEDED waits for a licence on the escrow's schedule: first retry 6 hours later.
  LICENSE_RETRY_SECONDS: '21600'
  // Escrow: users that failed for good are retried 6 h, 12 h, 24 h after the first failure, then daily, for 28 days.
  ESCROW_RETRY_SECONDS: '21600'
  LEASE_SECONDS: '120'
  SALESFORCE_TIMEOUT_SECONDS: '30'
  // Deletion threshold: deactivations beyond it within the window are held for an admin's decision.
  DEACTIVATION_THRESHOLD: '500'
  DEACTIVATION_THRESHOLD_PERCENT: '20'
  DEACTIVATION_WINDOW_MINUTES: '60'
  // Quarantine: no Salesforce calls while credentials are rejected or most operations fail; probes back off.
  QUARANTINE_FAILURE_RATIO: '0.4'
  QUARANTINE_MIN_OPERATIONS: '20'
  QUARANTINE_WINDOW_MINUTES: '15'
  QUARANTINE_BACKOFF_BASE_SECONDS: '60'
  QUARANTINE_BACKOFF_MAX_SECONDS: '3600'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies web-site checks to this app settings resource, which has none of those properties:
  // checkov:skip=CKV_AZURE_13: not a site (authentication: see the site's CKV_AZURE_222)
  // checkov:skip=CKV_AZURE_222: not a site (public access: see the site)
  parent: functionApp
  // checkov:skip=CKV_AZURE_63: not a site; logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: not a site; logs go to Application Insights
  // checkov:skip=CKV_AZURE_66: not a site; logs go to Application Insights
  name: 'appsettings'
  // checkov:skip=CKV_AZURE_80: not a site; Python, not .NET Framework
  // checkov:skip=CKV_AZURE_88: not a site; Flex Consumption uses no Azure Files share
  properties: union(hostSettings, appSettings, salesforceCredentialSettings[salesforceAuthMode])
}

output name string = functionApp.name
output id string = functionApp.id
