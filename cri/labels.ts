/** CRI label selectors are exact matches on every given key. */
export const matchesLabels = (labels: Record<string, string>, selector: Record<string, string> | undefined): boolean =>
  !selector || Object.entries(selector).every(([k, v]) => labels[k] === v);
