// Documents: drag a file onto the chat (or pick one) to index it into the settings' RAG collection.

import * as api from './api.js';
import * as settings from './settings.js';

export function bindDocuments({ dropZone, picker, pickButton, panel, bar, label }) {
  const upload = async (files) => {
    if (!files.length) return;
    const collection = settings.get('collection') || 'default';
    const names = [...files].map((file) => file.name).join(', ');
    panel.hidden = false;
    bar.value = 0;
    bar.max = 100;
    label.textContent = `Uploading ${names} to ${collection}…`;
    try {
      const result = await api.uploadToIndex(files, collection, (loaded, total) => {
        bar.value = Math.round((loaded / total) * 100);
        label.textContent = loaded < total ? `Uploading ${names}: ${bar.value}%` : `Indexing ${names}…`;
      });
      bar.value = 100;
      label.textContent = `Indexed ${names} into ${result.collection}: ${result.chunks_added} new chunks`
        + (result.chunks_unchanged ? `, ${result.chunks_unchanged} unchanged` : '') + '.';
    } catch (error) {
      label.textContent = `Could not index ${names}: ${error.message}`;
    }
  };
  let depth = 0;
  dropZone.addEventListener('dragenter', (event) => {
    if (!event.dataTransfer?.types?.includes('Files')) return;
    depth += 1;
    dropZone.classList.add('dragging');
  });
  dropZone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropZone.classList.remove('dragging');
  });
  dropZone.addEventListener('dragover', (event) => {
    if (event.dataTransfer?.types?.includes('Files')) event.preventDefault();
  });
  dropZone.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    dropZone.classList.remove('dragging');
    upload(event.dataTransfer.files);
  });
  pickButton.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    upload(picker.files);
    picker.value = '';
  });
}
