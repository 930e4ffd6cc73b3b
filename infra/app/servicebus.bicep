// Service Bus namespace (Entra auth only) and the provisioning queue. The queue's settings are part of
// the app's contract (README "What it does, exactly"):
// - duplicate detection over 10 minutes drops repeated "reconcile user X" messages (message_id);
// - a permanent failure re-raises on every delivery, so maxDeliveryCount 10 dead-letters it in
//   milliseconds, and the dead-letter queue feeds the failure emails;
// - a 1-minute lock; the host renews it while a call runs (host.json maxAutoLockRenewalDuration).
param name string
param location string
param tags object
param queueName string

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: namespace
  name: queueName
  properties: {
    maxDeliveryCount: 10
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

output name string = namespace.name
output id string = namespace.id
// serviceBusEndpoint is https://<name>.servicebus.windows.net:443/ (or a national cloud's suffix)
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
output queueName string = queue.name
