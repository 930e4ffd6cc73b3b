// Key Vault with Azure RBAC (no access policies) for the Salesforce credentials and the Graph
// change-notification clientState. The vault holds no secret values from this template: an operator
// sets them once (infra/README.md), and the Function App reads them through Key Vault references.
param name string
param location string
param tags object
@description('Turn off only for throw-away environments: with purge protection a deleted vault keeps its name for 90 days.')
param enablePurgeProtection bool = true

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: Flex Consumption without a VNet has no fixed outbound addresses to allow; access is Entra RBAC only
    // checkov:skip=CKV_AZURE_189: public network access is needed for the same reason; a VNet deployment should turn it off
    // checkov:skip=CKV_AZURE_110: purge protection is on unless keyVaultPurgeProtection=false (checkov cannot evaluate the parameter)
    // checkov:skip=CKV_AZURE_42: soft delete is always on and purge protection on by default (see CKV_AZURE_110)
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
