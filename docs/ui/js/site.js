// ggufref UI: theme toggle, mobile nav, page TOC with scroll spy, copy buttons. No dependencies.
;(function () {
  'use strict'
  var root = document.documentElement

  // Dark mode toggle; the initial theme is set by an inline script in <head>.
  var toggle = document.querySelector('.theme-toggle')
  if (toggle) {
    toggle.addEventListener('click', function () {
      var next = root.getAttribute('data-theme') === 'dark' ? 'light' : 'dark'
      root.setAttribute('data-theme', next)
      try { localStorage.setItem('ggufref-theme', next) } catch (e) {}
    })
  }

  // Off-canvas navigation on narrow screens.
  var navToggle = document.querySelector('.nav-toggle')
  if (navToggle) {
    navToggle.addEventListener('click', function () {
      var open = document.body.classList.toggle('nav-open')
      navToggle.setAttribute('aria-expanded', open ? 'true' : 'false')
    })
  }
  var current = document.querySelector('.nav .is-current')
  if (current && current.scrollIntoView) {
    var nav = document.querySelector('.nav-inner')
    if (nav && current.offsetTop > nav.clientHeight * 0.6) nav.scrollTop = current.offsetTop - nav.clientHeight / 3
  }

  // Page TOC from the article's section headings.
  var list = document.getElementById('toc-list')
  var headings = Array.prototype.slice.call(document.querySelectorAll('article.doc h2[id], article.doc h3[id]'))
  if (list) {
    if (headings.length < 2) {
      document.body.classList.add('no-toc')
    } else {
      headings.forEach(function (h) {
        var li = document.createElement('li')
        li.className = 'toc-' + h.tagName.toLowerCase()
        var a = document.createElement('a')
        a.href = '#' + h.id
        a.textContent = h.textContent
        li.appendChild(a)
        list.appendChild(li)
      })
      var links = list.querySelectorAll('a')
      var spy = function () {
        var idx = 0
        for (var i = 0; i < headings.length; i++) {
          if (headings[i].getBoundingClientRect().top < 120) idx = i
        }
        for (var j = 0; j < links.length; j++) links[j].classList.toggle('is-active', j === idx)
      }
      window.addEventListener('scroll', spy, { passive: true })
      spy()
    }
  }

  // Diagrams: shrink a wide one to fit the column, but never below MIN_SCALE of its natural size
  // (its 14 px text stays >= 11 px; the column scrolls instead), and open it full size on click.
  var MIN_SCALE = 0.8
  Array.prototype.forEach.call(document.querySelectorAll('.imageblock.mermaid img'), function (img) {
    var fit = function () {
      var box = img.parentNode.clientWidth - 24
      var w = img.naturalWidth
      if (!w) return
      img.style.width = Math.round(Math.min(w, Math.max(box, w * MIN_SCALE))) + 'px'
    }
    if (img.complete) fit(); else img.addEventListener('load', fit)
    window.addEventListener('resize', fit)
    img.title = 'Click to enlarge'
    img.addEventListener('click', function () {
      var box = document.createElement('div')
      box.className = 'lightbox'
      box.setAttribute('role', 'dialog')
      box.setAttribute('aria-label', img.alt || 'diagram')
      var big = document.createElement('img')
      big.src = img.src
      big.alt = img.alt
      var close = document.createElement('button')
      close.className = 'lightbox-close'
      close.type = 'button'
      close.setAttribute('aria-label', 'Close')
      close.textContent = '\u00d7'
      box.appendChild(big)
      box.appendChild(close)
      var done = function () {
        box.remove()
        document.removeEventListener('keydown', onKey)
      }
      var onKey = function (e) { if (e.key === 'Escape') done() }
      box.addEventListener('click', done)
      document.addEventListener('keydown', onKey)
      document.body.appendChild(box)
      close.focus()
    })
  })

  // Copy buttons on listings.
  Array.prototype.forEach.call(document.querySelectorAll('.listingblock pre'), function (pre) {
    if (!navigator.clipboard) return
    var btn = document.createElement('button')
    btn.type = 'button'
    btn.className = 'copy-btn'
    btn.textContent = 'Copy'
    btn.addEventListener('click', function () {
      var code = pre.querySelector('code') || pre
      var text = code.innerText.replace(/^\$ /gm, '')
      navigator.clipboard.writeText(text).then(function () {
        btn.textContent = 'Copied'
        setTimeout(function () { btn.textContent = 'Copy' }, 1200)
      }, function () {})
    })
    pre.parentNode.classList.add('has-copy')
    pre.parentNode.appendChild(btn)
  })
})()
