'use strict'
// Handlebars passes an options object last; ignore it.
module.exports = (...args) => args.slice(0, -1).every(Boolean)
