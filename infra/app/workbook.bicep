// An Azure Monitor workbook on Application Insights that answers "how far behind are we", "what failed
// today and why" and "what happened to user X" from the audit records and custom metrics. Its content
// is infra/workbook.json (queries identical to infra/queries/*.kql, checked by tests/infra).
param applicationInsightsId string
param location string
param tags object

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsightsId, 'provisioning-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Entra ID to Salesforce provisioning'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: string(loadJsonContent('../workbook.json'))
  }
}

output id string = workbook.id
