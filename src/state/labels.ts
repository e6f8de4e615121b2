// What a label key and a label value may be (Kubernetes' rules): one definition for the manifest
// schemas and for label selectors.

const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Letters, digits, "-", "_" and ".", starting and ending alphanumeric; empty allowed. */
export const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
export const LABEL_VALUE_MAX = 63;
export const LABEL_KEY_WORDS = 'a label key (optional DNS prefix and "/", then at most 63 letters, digits, "-", "_", ".")';

export function isLabelKey(k: string): boolean {
  const slash = k.indexOf('/');
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}

export function isLabelValue(v: string): boolean {
  return v.length <= LABEL_VALUE_MAX && LABEL_VALUE.test(v);
}
