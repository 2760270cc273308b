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
]
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--no-first-run',
  '--disable-sync', '--disable-default-apps', '--disable-extensions', '--allow-file-access-from-files']

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
  await page.close()
  return { ...check, ...info, screenshot: shot, problems }
}

const browser = await puppeteer.launch({
  executablePath: process.env.PUPPETEER_EXECUTABLE_PATH || '/usr/bin/chromium',
  pipe: true,
  headless: true,
  args: ARGS,
})
const results = []
try {
  for (const check of CHECKS) results.push(await checkPage(browser, check))
} finally {
  await browser.close()
}
const ok = results.every((r) => r.problems.length === 0)
console.log(JSON.stringify({ ok, results }))
process.exit(ok ? 0 : 1)
