-- Derived from schemas/archive/sale.json by `usher archive schemas`: do not edit.
CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`sale` (
  `PK` string COMMENT 'SALE#saleId',
  `SK` string COMMENT 'SALE',
  `saleId` string COMMENT 'The sale',
  `campaignId` string COMMENT 'The campaign',
  `eventId` string COMMENT 'The event',
  `globalUserId` string COMMENT 'The buyer, hashed',
  `email` string COMMENT 'The buyer e-mail, hashed',
  `cardLast4` string COMMENT 'Never archived',
  `accessCode` string COMMENT 'Never archived',
  `quantity` bigint COMMENT 'Tickets',
  `amount` double COMMENT 'Total paid',
  `currency` string COMMENT 'ISO 4217',
  `soldAt` string COMMENT 'RFC 3339',
  `systemId` string COMMENT 'The system the record comes from (setting system_id)',
  `reference` string COMMENT 'The record reference: type, table and key (type:table:PK:SK)',
  `changeType` string COMMENT 'INSERT, MODIFY or REMOVE',
  `deleted` boolean COMMENT 'Whether the change removed the item (the record is then its old image)',
  `sequenceNumber` string COMMENT 'The stream sequence number of the change (unique per change; compaction dedupes by it)',
  `changedAt` timestamp COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A sale made with an access code (demand-table items whose PK starts with SALE#)'
PARTITIONED BY (`dt` string)
STORED AS PARQUET
LOCATION 's3://ARCHIVE_BUCKET/archive/sale/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/sale/dt=${dt}/',
  'parquet.compression'='SNAPPY'
);
