'use strict'
// Build-time Mermaid for Antora, offline.
//
// Asciidoctor.js block processors cannot await, so rendering happens in two steps:
//  1. During conversion, a block processor replaces every [mermaid] block with an image block
//     that points at image$mermaid/<sha256>.svg and adds an empty file of that name to the
//     content catalog (the hash covers the diagram source and the render config).
//  2. In beforePublish, one headless Chromium (through puppeteer) renders each diagram with
//     mermaid-cli's renderMermaid() and fills the files. Rendered SVGs are cached in
//     .cache/mermaid/, so Chromium is not even started when every diagram is cached.
// A Mermaid syntax error fails the build with the page path and Mermaid's own message.

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const PACKAGE = '@mermaid-js/mermaid-cli'
// The font is fixed and installed from Debian (fonts-dejavu-core) on the host and in the image,
// so that text widths, and therefore the SVG sizes, are the same wherever the site is built.
const FONT = 'DejaVu Sans'
const MERMAID_CONFIG = {
  theme: 'base',
  fontFamily: FONT,
  htmlLabels: false,
  securityLevel: 'strict',
  deterministicIds: true,
  flowchart: { htmlLabels: false, curve: 'basis', padding: 12 },
  // Sequence diagrams measure text with their own font settings (default "trebuchet ms",
  // verdana, arial), which fontconfig maps differently on different machines: pin them too.
  sequence: {
    mirrorActors: false,
    // Narrower than the defaults (150, 50): sequence diagrams are the widest on the site.
    width: 120,
    actorMargin: 30,
    actorFontFamily: FONT,
    noteFontFamily: FONT,
    messageFontFamily: FONT,
  },
  themeVariables: {
    fontFamily: FONT,
    fontSize: '14px',
    primaryColor: '#e8f1fb',
    primaryBorderColor: '#2f6fb5',
    primaryTextColor: '#1b2430',
    secondaryColor: '#fdf3e1',
    tertiaryColor: '#f3f6f9',
    lineColor: '#5a6b7d',
    noteBkgColor: '#fff8dc',
    noteBorderColor: '#c9a227',
  },
}
const BROWSER_ARGS = [
  '--no-sandbox', '--headless', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--no-first-run',
  '--disable-sync', '--disable-default-apps', '--disable-extensions',
]

function mermaidVersion () {
  try {
    return require(`${PACKAGE}/package.json`).version
  } catch {
    return 'unknown'
  }
}

function diagramHash (source) {
  const key = JSON.stringify({ v: mermaidVersion(), config: MERMAID_CONFIG }) + '\n' + source
  return crypto.createHash('sha256').update(key).digest('hex')
}

// Where a block came from, for error messages: the page, and the include file and line if known.
// The block's own reader only knows the block's lines, so ask the document's reader, which sits
// just past the block's closing delimiter (in the included file when the block was included).
function describeOrigin (file, parent) {
  const src = file.src
  const page = src.origin?.startPath ? `${src.origin.startPath}/${src.path}` : src.path || src.relative
  let where = page
  try {
    const cursor = parent.getDocument().getReader().getCursor()
    const inc = cursor.getPath()
    const line = cursor.getLineNumber()
    if (inc && inc !== '<stdin>' && !page.endsWith(inc)) where += ` (in included ${inc})`
    if (line > 1) where += `, diagram ending at line ${line - 1}`
  } catch {}
  return where
}

function register ({ config = {} }) {
  const logger = this.getLogger('ggufref-mermaid')
  const diagrams = new Map() // sha -> { source, origins: [], files: [] }
  const catalogFiles = new Map() // module-qualified image path -> file
  const cacheDir = path.resolve(config.cacheDir || '.cache/mermaid')

  function blockProcessor (contentCatalog, file) {
    return function () {
      this.named('mermaid')
      this.onContexts(['listing', 'literal', 'open'])
      this.parseContentAs('raw')
      this.process((parent, reader, attrs) => {
        const source = reader.getLines().join('\n').trim() + '\n'
        const sha = diagramHash(source)
        const relative = `mermaid/${sha}.svg`
        const { component, version, module: module_ } = file.src
        const key = `${version}@${component}:${module_}:${relative}`
        let entry = diagrams.get(sha)
        if (!entry) diagrams.set(sha, (entry = { source, origins: [], files: [] }))
        entry.origins.push(describeOrigin(file, parent))
        if (!catalogFiles.has(key)) {
          const image = contentCatalog.addFile({
            contents: Buffer.alloc(0),
            src: { component, version, module: module_, family: 'image', relative },
          })
          catalogFiles.set(key, image)
          entry.files.push(image)
        }
        const alt = attrs.alt || attrs.title || 'diagram'
        const imageAttrs = { target: relative, alt, role: 'mermaid' }
        if (attrs.title) imageAttrs.title = attrs.title
        if (attrs.id) imageAttrs.id = attrs.id
        return this.createImageBlock(parent, imageAttrs)
      })
    }
  }

  this.on('beforeProcess', ({ siteAsciiDocConfig }) => {
    const ext = {
      register (registry, { file, contentCatalog }) {
        if (!contentCatalog || !file?.src) return
        registry.block(blockProcessor(contentCatalog, file))
      },
    }
    siteAsciiDocConfig.extensions = [...(siteAsciiDocConfig.extensions || []), ext]
  })

  this.on('beforePublish', async () => {
    fs.mkdirSync(cacheDir, { recursive: true })
    const todo = []
    for (const [sha, entry] of diagrams) {
      const cached = path.join(cacheDir, `${sha}.svg`)
      if (fs.existsSync(cached)) entry.svg = fs.readFileSync(cached)
      else todo.push([sha, entry])
    }
    if (todo.length) await renderAll(todo, cacheDir, logger)
    for (const entry of diagrams.values()) for (const f of entry.files) f.contents = entry.svg
    logger.info(`${diagrams.size} Mermaid diagrams (${todo.length} rendered, rest cached)`)
  })
}

// Mermaid emits width="100%" and a max-width style; an <img> then stretches to the column.
// Give the SVG its real width and height from the viewBox instead.
function fixSize (svg) {
  const m = svg.match(/<svg[^>]*?\sviewBox="([^"]+)"/)
  if (!m) return svg
  const box = m[1].trim().split(/[\s,]+/).map(Number)
  if (box.length !== 4 || !box.every(Number.isFinite)) return svg
  const w = Math.ceil(box[2])
  const h = Math.ceil(box[3])
  return svg.replace(/<svg([^>]*?)>/, (tag, attrs) => {
    let a = attrs.replace(/\swidth="[^"]*"/, '').replace(/\sheight="[^"]*"/, '')
    a = a.replace(/\sstyle="max-width:[^";]*;?([^"]*)"/, (s, rest) => (rest ? ` style="${rest}"` : ''))
    return `<svg${a} width="${w}" height="${h}">`
  })
}

async function renderAll (todo, cacheDir, logger) {
  const { renderMermaid } = await import(PACKAGE)
  const puppeteer = require('puppeteer')
  const executablePath = process.env.PUPPETEER_EXECUTABLE_PATH || '/usr/bin/chromium'
  const browser = await puppeteer.launch({ executablePath, pipe: true, headless: true, args: BROWSER_ARGS })
  try {
    for (const [sha, entry] of todo) {
      let data
      try {
        const out = await renderMermaid(browser, entry.source, 'svg', {
          backgroundColor: 'transparent',
          mermaidConfig: { ...MERMAID_CONFIG, deterministicIDSeed: sha.slice(0, 12) },
        })
        data = out.data
      } catch (err) {
        const msg = String(err && err.message ? err.message : err).split('\n').slice(0, 6).join(' ')
        throw new Error(`Mermaid diagram failed to render on ${entry.origins[0]}: ${msg}`)
      }
      const svg = Buffer.from(fixSize(Buffer.from(data).toString('utf8')), 'utf8')
      fs.writeFileSync(path.join(cacheDir, `${sha}.svg`), svg)
      entry.svg = svg
      logger.info(`rendered Mermaid diagram ${sha.slice(0, 12)} from ${entry.origins[0]}`)
    }
  } finally {
    await browser.close()
  }
}

module.exports = { register, diagramHash, fixSize, MERMAID_CONFIG }
