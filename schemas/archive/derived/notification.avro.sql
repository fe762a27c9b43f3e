-- Derived from schemas/archive/notification.json by `usher archive schemas`: do not edit.
CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`notification` (
  `PK` string COMMENT 'NOTIFICATION#campaignId#globalUserId, hashed (it holds the user id)',
  `SK` string COMMENT 'The notification kind and time',
  `campaignId` string COMMENT 'The campaign',
  `globalUserId` string COMMENT 'The fan, hashed',
  `marketId` string COMMENT 'The market',
  `kind` string COMMENT 'reminder, verdict or code',
  `channel` string COMMENT 'email or sms',
  `email` string COMMENT 'The address, hashed',
  `phone` string COMMENT 'Never archived',
  `status` string COMMENT 'PLANNED, SENT or FAILED',
  `jobId` string COMMENT 'The sending job',
  `sentAt` string COMMENT 'RFC 3339',
  `createdAt` string COMMENT 'RFC 3339',
  `systemId` string COMMENT 'The system the record comes from (setting system_id)',
  `reference` string COMMENT 'The record reference: type, table and key (type:table:PK:SK)',
  `changeType` string COMMENT 'INSERT, MODIFY or REMOVE',
  `deleted` boolean COMMENT 'Whether the change removed the item (the record is then its old image)',
  `sequenceNumber` string COMMENT 'The stream sequence number of the change (unique per change; compaction dedupes by it)',
  `changedAt` bigint COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A notification sent to a fan (demand-table items whose PK starts with NOTIFICATION#)'
PARTITIONED BY (`dt` string)
STORED AS AVRO
LOCATION 's3://ARCHIVE_BUCKET/archive/notification/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/notification/dt=${dt}/',
  'avro.schema.literal'='{"doc":"A notification sent to a fan (demand-table items whose PK starts with NOTIFICATION#)","fields":[{"doc":"NOTIFICATION#campaignId#globalUserId, hashed (it holds the user id)","name":"PK","type":"string"},{"doc":"The notification kind and time","name":"SK","type":"string"},{"doc":"The campaign","name":"campaignId","type":"string"},{"doc":"The fan, hashed","name":"globalUserId","type":"string"},{"default":null,"doc":"The market","name":"marketId","type":["null","string"]},{"doc":"reminder, verdict or code","name":"kind","type":"string"},{"default":null,"doc":"email or sms","name":"channel","type":["null","string"]},{"default":null,"doc":"The address, hashed","name":"email","type":["null","string"]},{"default":null,"doc":"Never archived","name":"phone","type":["null","string"]},{"default":null,"doc":"PLANNED, SENT or FAILED","name":"status","type":["null","string"]},{"default":null,"doc":"The sending job","name":"jobId","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"sentAt","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"createdAt","type":["null","string"]},{"doc":"The system the record comes from (setting system_id)","name":"systemId","type":"string"},{"doc":"The record reference: type, table and key (type:table:PK:SK)","name":"reference","type":"string"},{"doc":"INSERT, MODIFY or REMOVE","name":"changeType","type":"string"},{"doc":"Whether the change removed the item (the record is then its old image)","name":"deleted","type":"boolean"},{"doc":"The stream sequence number of the change (unique per change; compaction dedupes by it)","name":"sequenceNumber","type":"string"},{"doc":"The approximate creation time of the change; dt is its UTC date","name":"changedAt","type":{"logicalType":"timestamp-millis","type":"long"}}],"name":"notification","namespace":"usher.archive","type":"record"}'
);
