-- Derived from schemas/archive/demand.json by `usher archive schemas`: do not edit.
CREATE EXTERNAL TABLE IF NOT EXISTS `usher_archive`.`demand` (
  `PK` string COMMENT 'ENTRY#campaignId#globalUserId, hashed (it holds the user id)',
  `SK` string COMMENT 'ENTRY',
  `campaignId` string COMMENT 'The campaign',
  `globalUserId` string COMMENT 'The fan, hashed',
  `marketId` string COMMENT 'The market entered',
  `entry` string COMMENT 'The registration fields (JSON), names masked, phone dropped',
  `email` string COMMENT 'The fan e-mail, hashed',
  `verdict` string COMMENT 'PENDING, WINNER, LOSER or WAITLIST',
  `accessCode` string COMMENT 'A winner access code: never archived',
  `drawId` string COMMENT 'The draw that gave the verdict',
  `needsReplication` boolean COMMENT 'Whether the Entry Service has yet to see the last write',
  `version` bigint COMMENT 'Grows with every write of the entry',
  `transferredFrom` string COMMENT 'The linked campaign the entry was transferred from',
  `createdAt` string COMMENT 'RFC 3339',
  `updatedAt` string COMMENT 'RFC 3339',
  `systemId` string COMMENT 'The system the record comes from (setting system_id)',
  `reference` string COMMENT 'The record reference: type, table and key (type:table:PK:SK)',
  `changeType` string COMMENT 'INSERT, MODIFY or REMOVE',
  `deleted` boolean COMMENT 'Whether the change removed the item (the record is then its old image)',
  `sequenceNumber` string COMMENT 'The stream sequence number of the change (unique per change; compaction dedupes by it)',
  `changedAt` bigint COMMENT 'The approximate creation time of the change; dt is its UTC date'
)
COMMENT 'A fans entry in a campaign (demand-table items with SK ENTRY), as registration, replication and selection write it'
PARTITIONED BY (`dt` string)
STORED AS AVRO
LOCATION 's3://ARCHIVE_BUCKET/archive/demand/'
TBLPROPERTIES (
  'projection.enabled'='true',
  'projection.dt.type'='date',
  'projection.dt.format'='yyyy-MM-dd',
  'projection.dt.range'='2020-01-01,NOW',
  'storage.location.template'='s3://ARCHIVE_BUCKET/archive/demand/dt=${dt}/',
  'avro.schema.literal'='{"doc":"A fans entry in a campaign (demand-table items with SK ENTRY), as registration, replication and selection write it","fields":[{"doc":"ENTRY#campaignId#globalUserId, hashed (it holds the user id)","name":"PK","type":"string"},{"doc":"ENTRY","name":"SK","type":"string"},{"doc":"The campaign","name":"campaignId","type":"string"},{"doc":"The fan, hashed","name":"globalUserId","type":"string"},{"default":null,"doc":"The market entered","name":"marketId","type":["null","string"]},{"default":null,"doc":"The registration fields (JSON), names masked, phone dropped","name":"entry","type":["null","string"]},{"default":null,"doc":"The fan e-mail, hashed","name":"email","type":["null","string"]},{"default":null,"doc":"PENDING, WINNER, LOSER or WAITLIST","name":"verdict","type":["null","string"]},{"default":null,"doc":"A winner access code: never archived","name":"accessCode","type":["null","string"]},{"default":null,"doc":"The draw that gave the verdict","name":"drawId","type":["null","string"]},{"default":null,"doc":"Whether the Entry Service has yet to see the last write","name":"needsReplication","type":["null","boolean"]},{"default":null,"doc":"Grows with every write of the entry","name":"version","type":["null","long"]},{"default":null,"doc":"The linked campaign the entry was transferred from","name":"transferredFrom","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"createdAt","type":["null","string"]},{"default":null,"doc":"RFC 3339","name":"updatedAt","type":["null","string"]},{"doc":"The system the record comes from (setting system_id)","name":"systemId","type":"string"},{"doc":"The record reference: type, table and key (type:table:PK:SK)","name":"reference","type":"string"},{"doc":"INSERT, MODIFY or REMOVE","name":"changeType","type":"string"},{"doc":"Whether the change removed the item (the record is then its old image)","name":"deleted","type":"boolean"},{"doc":"The stream sequence number of the change (unique per change; compaction dedupes by it)","name":"sequenceNumber","type":"string"},{"doc":"The approximate creation time of the change; dt is its UTC date","name":"changedAt","type":{"logicalType":"timestamp-millis","type":"long"}}],"name":"demand","namespace":"usher.archive","type":"record"}'
);
