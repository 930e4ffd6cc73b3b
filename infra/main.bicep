// Entra ID → Salesforce provisioning: everything `azd up` deploys into one resource group.
// Plain resources in local modules rather than Azure Verified Modules (br/public:avm/...): registry
// modules cannot be resolved offline, so neither checkov nor tests/infra could see the properties
// that matter here (shared keys off, local auth off, queue settings, role assignments).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; makes resource names unique.')
param environmentName string

@minLength(1)
@description('Region for all resources; it must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the user or pipeline running the deployment: may set the Key Vault secrets. Empty for none.')
param principalId string = ''
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Object id of the Salesforce enterprise application\'s service principal in Entra ID.')
param salesforceServicePrincipalId string
@description('Mailbox the failure digests are sent from (restrict Mail.Send to it: infra/README.md).')
param notifySender string
@description('Comma-separated addresses that receive failure digests and alerts.')
param notifyRecipients string

@allowed(['jwt', 'client_credentials', 'password'])
param salesforceAuthMode string = 'jwt'
@description('login, test (sandbox) or <name>.my (My Domain; required for client_credentials).')
param salesforceDomain string = 'login'
@description('Connected app consumer key (jwt, client_credentials).')
param salesforceConsumerKey string = ''
@description('Integration user\'s username (jwt, password).')
param salesforceUsername string = ''

@description('Graph root including the version; national clouds: https://graph.microsoft.us/v1.0, ...')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'
@description('NCRONTAB schedule of the detect timer.')
param detectSchedule string = '0 */5 * * * *'
@description('NCRONTAB schedule of the timer that creates and renews the Graph change-notification subscriptions.')
param subscriptionSchedule string = '0 0 */6 * * *'
@description('Comma-separated Salesforce profile names, highest first, for users holding several roles.')
param profilePriority string = ''
@description('Attribute mapping file deployed with the app (e.g. config/mapping.default.toml), relative to its root; empty: the built-in default mapping.')
param mappingFile string = ''
@description('Application object (object id or appId) that Salesforce profiles are imported into as app roles; empty: the one behind the service principal.')
param salesforceApplicationId string = ''
param serviceBusQueueName string = 'provision-users'

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@description('Turn off only for throw-away environments: with purge protection a deleted vault keeps its name for 90 days.')
param keyVaultPurgeProtection bool = true

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}provisioning-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}provisioning-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module serviceBus 'app/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: '${abbrs.serviceBusNamespaces}${resourceToken}'
    location: location
    tags: tags
    queueName: serviceBusQueueName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    serviceBusQueueName: serviceBus.outputs.queueName
    keyVaultUri: keyVault.outputs.uri
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    detectSchedule: detectSchedule
    subscriptionSchedule: subscriptionSchedule
    graphBaseUrl: graphBaseUrl
    salesforceServicePrincipalId: salesforceServicePrincipalId
    salesforceAuthMode: salesforceAuthMode
    salesforceDomain: salesforceDomain
    salesforceConsumerKey: salesforceConsumerKey
    salesforceUsername: salesforceUsername
    notifySender: notifySender
    notifyRecipients: notifyRecipients
    profilePriority: profilePriority
    mappingFile: mappingFile
    salesforceApplicationId: salesforceApplicationId
  }
  // The app starts resolving Key Vault references and reaching storage as soon as it exists.
  dependsOn: [rbac]
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    location: location
    tags: tags
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: resourceToken
    tags: tags
    location: location
    serviceBusNamespaceId: serviceBus.outputs.id
    serviceBusQueueName: serviceBus.outputs.queueName
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertRecipients: notifyRecipients
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE_NAME string = serviceBus.outputs.queueName
