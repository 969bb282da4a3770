// The settings page: every field is saved to localStorage as it changes.

import * as settings from './settings.js';

const NUMBER_FIELDS = new Set(['temperature', 'maxTokens']);

export function bindSettings(form, saved) {
  const fields = form.querySelectorAll('[data-setting]');
  const fill = () => {
    for (const field of fields) {
      const value = settings.get(field.dataset.setting);
      if (field.type === 'checkbox') field.checked = Boolean(value);
      else field.value = value;
    }
  };
  fill();
  for (const field of fields) {
    field.addEventListener('change', () => {
      const name = field.dataset.setting;
      let value = field.type === 'checkbox' ? field.checked : field.value;
      if (NUMBER_FIELDS.has(name)) {
        if (!field.checkValidity() || field.value === '') {
          saved.textContent = `${field.labels?.[0]?.textContent || name}: ${field.validationMessage || 'invalid'}`;
          return;
        }
        value = Number(value);
      }
      settings.set(name, value);
      saved.textContent = 'Saved.';
    });
  }
  settings.onChange(fill);
}
