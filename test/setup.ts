import '../model/polyfill.js'
