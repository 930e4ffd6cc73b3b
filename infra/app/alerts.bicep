// Alerts for an operator: dead letters that stay (the failure emails are not going out), failing
// function executions, and a detect timer that has not completed a cycle for an hour.
param namePrefix string
param tags object
param serviceBusNamespaceId string
param serviceBusQueueName string
param applicationInsightsId string
param location string
@description('Comma-separated addresses that get the alert emails (the same admins as NOTIFY_RECIPIENTS).')
param alertRecipients string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'provisioning'
    enabled: true
    emailReceivers: [for (address, i) in split(alertRecipients, ','): {
      name: 'admin-${i}'
      emailAddress: trim(address)
      useCommonAlertSchema: true
    }]
  }
}

// The dead-letter handler emails and then completes each dead letter within seconds; a dead-letter
// count that never drops to zero for 30 minutes means those emails are failing (or the handler is down).
resource deadLettersStuck 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'ma-${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Dead-lettered provisioning messages have stayed on the queue for 30 minutes: failure emails are not being sent.'
    severity: 2
    enabled: true
    scopes: [serviceBusNamespaceId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLettersPresent'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            { name: 'EntityName', operator: 'Include', values: [serviceBusQueueName] }
          ]
          timeAggregation: 'Minimum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [{ actionGroupId: actionGroup.id }]
  }
}

resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'ma-${namePrefix}-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'Function executions failed in the last 15 minutes (each transient retry counts too).'
    severity: 3
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'FailedExecutions'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [{ actionGroupId: actionGroup.id }]
  }
}

// Every completed detect cycle writes one record (shared/services/audit.py, logger
// shared.services.audit, message "detect cycle: ..."). None for an hour: detection is stuck.
resource noDetectCycle 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'sqr-${namePrefix}-no-detect-cycle'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    description: 'No detect cycle has completed in the last hour: changes in Entra are not being picked up.'
    severity: 2
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: 'traces | where customDimensions.logger_name == "shared.services.audit" and message startswith "detect cycle"'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    actions: { actionGroups: [actionGroup.id] }
  }
}
