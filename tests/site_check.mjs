// Headless check of the built site: loads pages from build/site over file://, fails on console
// errors, page errors, failed requests or broken images, and saves screenshots.
// Usage: node tests/site_check.mjs [siteDir] [screenshotDir]
// Prints one JSON line with the results; exits 1 when any page has a problem.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import puppeteer from 'puppeteer'

const siteDir = path.resolve(process.argv[2] || 'build/site')
const shotDir = path.resolve(process.argv[3] || 'build/screenshots')
const CHECKS = [
  { name: 'index', page: 'ggufref/index.html', theme: 'light' },
  { name: 'k-quants', page: 'ggufref/explanation/k-quants.html', theme: 'light' },
  { name: 'k-quants-dark', page: 'ggufref/explanation/k-quants.html', theme: 'dark' },
  { name: 'index-dark', page: 'ggufref/index.html', theme: 'dark', width: 1400, height: 1100 },
  { name: 'index-mobile', page: 'ggufref/index.html', theme: 'light', width: 420, height: 860 },
  { name: 'why', page: 'ggufref/why.html', theme: 'light' },
  { name: 'tool-calling', page: 'ggufref/explanation/tool-calling.html', theme: 'light' },
  { name: 'benchmarks-dark', page: 'ggufref/benchmarks.html', theme: 'dark' },
]
// Terms a reader types into the search box; each must find at least one page.
// (The nonsense word must find nothing: it shows the count can be zero.)
const SEARCHES = ['super-block', 'tok/s', 'Q4_K_M', 'GB/s', 'zzqqxxnonsense']
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--no-first-run',
  '--disable-sync', '--disable-default-apps', '--disable-extensions', '--allow-file-access-from-files']

// The number of matching passages for a query (a "no results" line is not a hit).
async function searchHits (page, query) {
  await page.click('#search-input', { clickCount: 3 })
  await page.keyboard.press('Backspace')
  await page.type('#search-input', query)
  await new Promise((resolve) => setTimeout(resolve, 500))
  return page.$$eval('.search-result-document-hit > a', (els) => els.length)
}

// Click the widest diagram of a page: a lightbox must show it at its natural width; Escape closes it.
async function checkZoom (browser) {
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900 })
  await page.goto(pathToFileURL(path.join(siteDir, 'ggufref/explanation/gguf-on-disk.html')).href, { waitUntil: 'load' })
  const img = await page.$('.imageblock.mermaid img')
  await img.click()
  const shown = await page.$eval('.lightbox img', (el) => ({ width: el.getBoundingClientRect().width, natural: el.naturalWidth }))
    .catch(() => null)
  await page.keyboard.press('Escape')
  const closed = (await page.$('.lightbox')) === null
  await page.close()
  return { opened: !!shown, width: shown ? shown.width : 0, natural: shown ? shown.natural : 1, closed }
}

async function checkPage (browser, check) {
  const page = await browser.newPage()
  const problems = []
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} (${req.failure()?.errorText})`))
  await page.setViewport({ width: check.width || 1400, height: check.height || 900 })
  await page.evaluateOnNewDocument((theme) => localStorage.setItem('ggufref-theme', theme), check.theme)
  const file = path.join(siteDir, check.page)
  if (!fs.existsSync(file)) return { ...check, problems: [`missing page ${file}`] }
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' })
  const info = await page.evaluate(async () => {
    const imgs = Array.from(document.images)
    await Promise.all(imgs.map((img) => (img.complete ? null : new Promise((r) => { img.onload = img.onerror = r }))))
    const toc = document.querySelectorAll('#toc-list a').length
    return {
      title: document.title,
      images: imgs.length,
      diagrams: document.querySelectorAll('.imageblock.mermaid img').length,
      broken: imgs.filter((img) => !img.naturalWidth).map((img) => img.getAttribute('src')),
      toc,
      nav: document.querySelectorAll('.nav a.nav-link').length,
      search: !!document.getElementById('search-input'),
      // Admonition labels: Antora's <i class="fa"> needs an icon font the site does not load,
      // so the CSS shows the title as text; this is what a reader sees.
      admonitionLabels: Array.from(document.querySelectorAll('.admonitionblock td.icon')).map((td) => {
        const i = td.querySelector('i')
        return i ? getComputedStyle(i, '::before').content.replace(/"/g, '') : td.textContent.trim()
      }),
    }
  })
  for (const src of info.broken) problems.push(`broken image: ${src}`)
  fs.mkdirSync(shotDir, { recursive: true })
  const shot = path.join(shotDir, `${check.name}.png`)
  await page.screenshot({ path: shot, fullPage: !check.width })
  // The search index loads asynchronously; a query must return results.
  if (info.search) {
    await page.waitForFunction(() => !document.getElementById('search-input').disabled, { timeout: 5000 })
      .catch(() => problems.push('search index did not load'))
    await page.type('#search-input', 'super-block')
    await page.waitForSelector('.search-result-item', { timeout: 3000 })
      .catch(() => problems.push('search for "super-block" found nothing'))
    info.searchHits = await page.$$eval('.search-result-item', (els) => els.length)
  }
  if (check.name === 'index' && info.search) {
    info.searches = {}
    for (const q of SEARCHES) info.searches[q] = await searchHits(page, q)
  }
  await page.close()
  return { ...check, ...info, screenshot: shot, problems }
}

// Rendered text size of every Mermaid diagram on every page at a 1280 px wide window: the
// smallest font size inside the SVG (computed style x the SVG's own transforms), times the scale
// at which the page shows the image (displayed width / natural width).
const DIAGRAM_WIDTH = 1280
async function svgMinFont (browser, file) {
  const page = await browser.newPage()
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' })
  const px = await page.evaluate(() => {
    let min = Infinity
    for (const el of document.querySelectorAll('text, tspan')) {
      if (!el.textContent.trim()) continue
      const size = parseFloat(getComputedStyle(el).fontSize)
      const m = el.getScreenCTM()
      const scale = m ? Math.hypot(m.a, m.b) : 1
      if (size * scale < min) min = size * scale
    }
    return min
  })
  await page.close()
  return px
}

async function measureDiagrams (browser) {
  const pages = []
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory() && e.name !== '_') walk(p)
      else if (e.name.endsWith('.html')) pages.push(p)
    }
  }
  walk(path.join(siteDir, 'ggufref'))
  const svgFont = new Map()
  const out = []
  const page = await browser.newPage()
  await page.setViewport({ width: DIAGRAM_WIDTH, height: 900 })
  for (const file of pages.sort()) {
    const html = fs.readFileSync(file, 'utf8')
    if (!html.includes('imageblock mermaid')) continue
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' })
    const imgs = await page.evaluate(async () => {
      const list = Array.from(document.querySelectorAll('.imageblock.mermaid img'))
      await Promise.all(list.map((img) => (img.complete ? null : new Promise((r) => { img.onload = img.onerror = r }))))
      return list.map((img) => ({ src: img.src, shown: img.getBoundingClientRect().width, natural: img.naturalWidth, id: img.closest('.imageblock').id || '' }))
    })
    for (const img of imgs) {
      const svg = decodeURIComponent(new URL(img.src).pathname)
      if (!svgFont.has(svg)) svgFont.set(svg, await svgMinFont(browser, svg))
      const scale = img.natural ? img.shown / img.natural : 0
      out.push({ page: path.relative(siteDir, file), id: img.id, svg: path.basename(svg), natural: img.natural, shown: Math.round(img.shown), minFont: svgFont.get(svg), rendered: +(svgFont.get(svg) * scale).toFixed(2) })
    }
  }
  await page.close()
  return out
}

const browser = await puppeteer.launch({
  executablePath: process.env.PUPPETEER_EXECUTABLE_PATH || '/usr/bin/chromium',
  pipe: true,
  headless: true,
  args: ARGS,
})
const results = []
let diagrams = []
let zoom = {}
try {
  for (const check of CHECKS) results.push(await checkPage(browser, check))
  diagrams = await measureDiagrams(browser)
  zoom = await checkZoom(browser)
} finally {
  await browser.close()
}
const ok = results.every((r) => r.problems.length === 0)
const searches = (results.find((r) => r.name === 'index') || {}).searches || {}
console.log(JSON.stringify({ ok, results, diagrams, zoom, searches }))
process.exit(ok ? 0 : 1)
