'use strict'
// Source captions for code listings, so a reader can find the file a snippet comes from.
//
// Every listing or literal block whose body is `include::example$PATH[tag=TAG]` gets a block
// title "Source: PATH, tag TAG" (a link when the playbook sets `source-url`, the base URL of the
// repository's files), unless the block already has a title. It works on the page source before
// Asciidoctor sees it, so the tagged-include rule of the docs (tests/test_docs.py) is unchanged.

const INCLUDE = /^include::example\$([^[\s]+)\[(?:[^\]]*,)?tag=([\w-]+)[^\]]*\]$/
const FENCES = new Set(['----', '....'])

function caption (path, tag, base) {
  const where = base ? `${base.replace(/\/$/, '')}/${path}[\`${path}\`]` : `\`${path}\``
  return `.Source: ${where}, tag \`${tag}\``
}

// The page's lines with a title line inserted above each captioned block's attribute line.
function addCaptions (lines, base) {
  const out = []
  let open = null
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (FENCES.has(line)) {
      if (open === line) {
        open = null
      } else if (open === null) {
        open = line
        const m = INCLUDE.exec(lines[i + 1] || '')
        const attrAt = out.length - 1
        const hasAttrs = attrAt >= 0 && /^\[.*\]$/.test(out[attrAt])
        const titleAt = hasAttrs ? attrAt - 1 : attrAt
        const titled = titleAt >= 0 && /^\.[^.\s]/.test(out[titleAt])
        if (m && !titled) out.splice(hasAttrs ? attrAt : out.length, 0, caption(m[1], m[2], base))
      }
    }
    out.push(line)
  }
  return out
}

function register ({ config = {} }) {
  this.on('contentClassified', ({ playbook, contentCatalog }) => {
    const attrs = (playbook.asciidoc && playbook.asciidoc.attributes) || {}
    const base = config.sourceUrl || attrs['source-url'] || ''
    for (const file of contentCatalog.getFiles()) {
      const family = file.src && file.src.family
      if ((family !== 'page' && family !== 'partial') || !/\.adoc$/.test(file.src.relative || '')) continue
      const text = file.contents.toString()
      if (!text.includes('include::example$')) continue
      const lines = addCaptions(text.split('\n'), base)
      file.contents = Buffer.from(lines.join('\n'))
    }
  })
}

module.exports = { register, addCaptions }
