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
  `changedAt` bigint COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A sale made with an access code (demand-table items whose PK starts with SALE#)'
PARTITIONED BY (`dt` string)
STORED AS AVRO
LOCATION 's3://ARCHIVE_BUCKET/archive/sale/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/sale/dt=${dt}/',
  'avro.schema.literal'='{"doc":"A sale made with an access code (demand-table items whose PK starts with SALE#)","fields":[{"doc":"SALE#saleId","name":"PK","type":"string"},{"doc":"SALE","name":"SK","type":"string"},{"doc":"The sale","name":"saleId","type":"string"},{"doc":"The campaign","name":"campaignId","type":"string"},{"default":null,"doc":"The event","name":"eventId","type":["null","string"]},{"doc":"The buyer, hashed","name":"globalUserId","type":"string"},{"default":null,"doc":"The buyer e-mail, hashed","name":"email","type":["null","string"]},{"default":null,"doc":"Never archived","name":"cardLast4","type":["null","string"]},{"default":null,"doc":"Never archived","name":"accessCode","type":["null","string"]},{"doc":"Tickets","name":"quantity","type":"long"},{"default":null,"doc":"Total paid","name":"amount","type":["null","double"]},{"default":null,"doc":"ISO 4217","name":"currency","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"soldAt","type":["null","string"]},{"doc":"The system the record comes from (setting system_id)","name":"systemId","type":"string"},{"doc":"The record reference: type, table and key (type:table:PK:SK)","name":"reference","type":"string"},{"doc":"INSERT, MODIFY or REMOVE","name":"changeType","type":"string"},{"doc":"Whether the change removed the item (the record is then its old image)","name":"deleted","type":"boolean"},{"doc":"The stream sequence number of the change (unique per change; compaction dedupes by it)","name":"sequenceNumber","type":"string"},{"doc":"The approximate creation time of the change; dt is its UTC date","name":"changedAt","type":{"logicalType":"timestamp-millis","type":"long"}}],"name":"sale","namespace":"usher.archive","type":"record"}'
);
