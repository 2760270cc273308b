'use strict'
// Strip HTML tags from a title, for <title>.
module.exports = (html) => (html ? String(html).replace(/<[^>]+>/g, '') : '')
