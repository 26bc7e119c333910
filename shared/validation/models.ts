/**
 * The model ids a request may name: the ones batchline knows. A misspelt model (`claude-sonet-4-5`)
 * would pass every other check and then error every row once a real batch has run, hours later;
 * Prepare and `batchline estimate` reject it at once, with the nearest known id.
 *
 * Known: every id of the price table (shared/cost/prices.ts, extended by the `pricesJson` setting),
 * the ids the SDK knows that have no list price, and any of those with a `-YYYYMMDD` date (as the
 * price table resolves them). The `allowUnknownModels` setting lets any model through, for one
 * the API serves before batchline lists it.
 */
import { BUILT_IN_PRICES, DATED_MODEL_IDS, MODELS_WITHOUT_LIST_PRICE, priceTableFromConfig, type PriceTable } from '../cost/prices';
import { nearest } from './nearest';

export interface ModelCatalog {
  /** Whether a request may name `model`. */
  allows(model: string): boolean;
  /** For a model it does not allow: the known id nearest to it, when one is near enough. */
  suggest(model: string): string | undefined;
}

const DATED = /^(.+)-\d{8}$/;

/** The models of `prices` (default: the built-in table) and the known unpriced ones; with `allowUnknown`, any model. */
export function modelCatalog(prices: PriceTable = BUILT_IN_PRICES, options: { allowUnknown?: boolean } = {}): ModelCatalog {
  const known = new Set([...prices.keys(), ...MODELS_WITHOUT_LIST_PRICE]);
  const isKnown = (model: string) => known.has(model) || known.has(DATED.exec(model)?.[1] ?? '');
  const candidates = [...known, ...DATED_MODEL_IDS];
  return {
    allows: options.allowUnknown ? () => true : isKnown,
    suggest: (model) => nearest(model, candidates),
  };
}

/** The models batchline knows out of the box. */
export const KNOWN_MODELS: ModelCatalog = modelCatalog();

/** The catalog the pipeline settings describe; a malformed pricesJson throws ConfigError. */
export function modelCatalogFromConfig(config: { pricesJson?: string | undefined; allowUnknownModels?: boolean }): ModelCatalog {
  const prices = priceTableFromConfig(config);
  if (prices === BUILT_IN_PRICES && !config.allowUnknownModels) return KNOWN_MODELS;
  return modelCatalog(prices, { allowUnknown: config.allowUnknownModels });
}
