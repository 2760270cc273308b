'use strict'
// True when a nav item or one of its descendants is the current page (keeps that branch open).
function contains (item, url) {
  if (item.url === url) return true
  return (item.items || []).some((child) => contains(child, url))
}
module.exports = (item, url) => contains(item, url)
