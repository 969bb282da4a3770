"""Scripts the web tools evaluate inside a page: link lists and the UI summary."""

# [selector, limit] -> the first `limit` links, inside the elements matching `selector` when given
LINKS_JS = """
([selector, limit]) => {
  const scopes = selector ? [...document.querySelectorAll(selector)] : [document];
  const seen = new Set(), links = [];
  for (const scope of scopes) {
    for (const a of scope.querySelectorAll('a[href]')) {
      if (links.length >= limit) return links;
      if (seen.has(a)) continue;
      seen.add(a);
      links.push({text: (a.innerText || a.getAttribute('aria-label') || '').trim().slice(0, 200), href: a.href});
    }
  }
  return links;
}
"""

ANALYZE_JS = """
() => {
  const label = e => (e.innerText || e.value || e.getAttribute('aria-label') || e.title || '').trim().slice(0, 120);
  const top = counts => Object.entries(counts).sort((a, b) => b[1] - a[1]).slice(0, 8)
    .map(([value, count]) => ({value, count}));
  const headings = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].slice(0, 100)
    .map(h => ({level: Number(h.tagName[1]), text: label(h)}));
  const forms = [...document.forms].slice(0, 50).map(f => ({
    id: f.id || null, action: f.getAttribute('action'), method: (f.getAttribute('method') || 'get').toLowerCase(),
    fields: [...f.elements].filter(e => e.tagName !== 'BUTTON' && e.type !== 'submit').slice(0, 50).map(e => ({
      tag: e.tagName.toLowerCase(), type: e.type || null, name: e.name || e.id || null, required: !!e.required,
      label: e.labels && e.labels.length ? e.labels[0].innerText.trim() : (e.getAttribute('aria-label') || null),
    })),
  }));
  const buttons = [...document.querySelectorAll(
    'button, input[type=submit], input[type=button], input[type=reset], [role=button]')].slice(0, 100).map(label);
  const images = [...document.images];
  const colors = {}, backgrounds = {}, fonts = {};
  for (const e of [...document.querySelectorAll('body, body *')].slice(0, 3000)) {
    const s = getComputedStyle(e);
    if (!e.innerText || !e.innerText.trim()) continue;
    colors[s.color] = (colors[s.color] || 0) + 1;
    fonts[s.fontFamily] = (fonts[s.fontFamily] || 0) + 1;
    const bg = s.backgroundColor;
    if (bg !== 'rgba(0, 0, 0, 0)') backgrounds[bg] = (backgrounds[bg] || 0) + 1;
  }
  const meta = document.querySelector('meta[name=viewport]');
  return {
    title: document.title, lang: document.documentElement.lang || null, headings, forms,
    buttons: {count: buttons.length, labels: buttons},
    links: {count: document.links.length},
    images: {count: images.length, without_alt: images.filter(i => !i.hasAttribute('alt')).slice(0, 50)
      .map(i => i.currentSrc || i.src)},
    colors: top(colors), backgrounds: top(backgrounds), fonts: top(fonts),
    viewport: {width: window.innerWidth, height: window.innerHeight, meta: meta ? meta.content : null},
    document_size: {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight},
  };
}
"""
