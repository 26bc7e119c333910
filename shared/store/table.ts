/** The table's key schema, shared by the CDK stack and the local emulators so they cannot drift. */
import { JOBS_GSI } from './items';

export const TABLE_KEY = { partitionKey: 'pk', sortKey: 'sk' } as const;
export const TABLE_TTL_ATTRIBUTE = 'ttl';
export const TABLE_GSIS = [{ indexName: JOBS_GSI, partitionKey: 'gsi1pk', sortKey: 'gsi1sk' }] as const;
