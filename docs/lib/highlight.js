'use strict'
// Build-time syntax highlighting for source blocks with highlight.js (from npm), so the site
// needs no highlighter script in the browser. Selected by `source-highlighter: ggufref-hljs`.
const hljs = require('highlight.js/lib/common')
const Asciidoctor = require('@asciidoctor/core')()

const ALIASES = { console: 'shell', sh: 'bash', text: 'plaintext', asciidoc: 'plaintext' }

function escapeHtml (s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

Asciidoctor.SyntaxHighlighter.register('ggufref-hljs', {
  handlesHighlighting () {
    return true
  },
  highlight (node, source, lang) {
    const language = ALIASES[lang] || lang
    if (!language || !hljs.getLanguage(language)) return escapeHtml(source)
    return hljs.highlight(source, { language, ignoreIllegals: true }).value
  },
  format (node, lang) {
    const langAttr = lang ? ` class="language-${lang} hljs" data-lang="${lang}"` : ' class="hljs"'
    return `<pre class="highlight"><code${langAttr}>${node.getContent()}</code></pre>`
  },
})

// Antora extension entry point: requiring this module did the (global) registration.
module.exports.register = function register () {}
