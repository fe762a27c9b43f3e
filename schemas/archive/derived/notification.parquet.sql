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
  `changedAt` timestamp COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A notification sent to a fan (demand-table items whose PK starts with NOTIFICATION#)'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION 's3://ARCHIVE_BUCKET/archive/notification/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/notification/dt=${dt}/',
  'parquet.compression'='SNAPPY'
);
