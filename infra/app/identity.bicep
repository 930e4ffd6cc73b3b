// The user-assigned managed identity the Function App runs as: storage, Service Bus, Key Vault,
// Application Insights and Microsoft Graph (app roles granted by scripts/grant-graph-permissions.sh).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output resourceId string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
