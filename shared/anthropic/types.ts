/** Wire types of the Message Batches API (see docs/api-reference.md §2–§4). */

export type ProcessingStatus = 'in_progress' | 'canceling' | 'ended';

export interface RequestCounts {
  processing: number;
  succeeded: number;
  errored: number;
  canceled: number;
  expired: number;
}

export interface MessageBatch {
  id: string;
  type: 'message_batch';
  processing_status: ProcessingStatus;
  request_counts: RequestCounts;
  ended_at: string | null;
  created_at: string;
  expires_at: string;
  archived_at: string | null;
  cancel_initiated_at: string | null;
  results_url: string | null;
}

/** Messages API create params. Open: the pipeline passes them through untouched. */
export interface MessageParams {
  model: string;
  max_tokens: number;
  messages: unknown[];
  [key: string]: unknown;
}

export interface BatchRequest {
  custom_id: string;
  params: MessageParams;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  cache_creation?: { ephemeral_5m_input_tokens?: number | null; ephemeral_1h_input_tokens?: number | null } | null;
  server_tool_use?: { web_search_requests?: number | null; web_fetch_requests?: number | null } | null;
  service_tier?: 'standard' | 'priority' | 'batch' | null;
  inference_geo?: string | null;
  output_tokens_details?: { thinking_tokens?: number | null } | null;
  speed?: 'standard' | 'fast' | null;
}

export interface Message {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: unknown[];
  stop_reason: string | null;
  stop_sequence: string | null;
  usage: Usage;
  [key: string]: unknown;
}

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'timeout_error'
  | 'api_error'
  | 'overloaded_error'
  | (string & {});

export interface ErrorEnvelope {
  type: 'error';
  error: { type: ErrorType; message: string; [key: string]: unknown };
  request_id: string | null;
}

export type BatchResult = { type: 'succeeded'; message: Message } | { type: 'errored'; error: ErrorEnvelope } | { type: 'canceled' } | { type: 'expired' };

export interface BatchResultLine {
  custom_id: string;
  result: BatchResult;
}

export interface ListPage {
  data: MessageBatch[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface DeletedBatch {
  id: string;
  type: 'message_batch_deleted';
}

/** Errored result types worth another attempt (docs/design.md). */
export const TRANSIENT_ERROR_TYPES: ReadonlySet<string> = new Set(['api_error', 'overloaded_error', 'rate_limit_error', 'timeout_error']);
