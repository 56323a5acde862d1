/** A Kubernetes label selector (metav1.LabelSelector), as a ClientPolicy states which Secrets it governs. */
export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelRequirement[];
}

export interface LabelRequirement {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

/**
 * Whether `labels` satisfy the selector, with the API server's meaning: every
 * matchLabels pair and every expression must hold; an empty selector selects
 * everything; `NotIn` and `DoesNotExist` hold for an object without the label.
 */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels)) {
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  }
  for (const requirement of selector.matchExpressions) {
    const has = Object.hasOwn(labels, requirement.key);
    switch (requirement.operator) {
      case 'In':
        if (!has || !requirement.values.includes(labels[requirement.key]!)) return false;
        break;
      case 'NotIn':
        if (has && requirement.values.includes(labels[requirement.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}
