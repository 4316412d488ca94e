// ESLint for the TypeScript and JavaScript of lib/, test/, bench/, scripts/ and examples/ (CONTRIBUTING.md).
// Formatting is prettier's (.prettierrc.json): this file holds only rules that catch real problems.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'build/',
      'build-cuda/',
      'prebuilds/',
      'node_modules/',
      'docs/api/',
      'docs/site/',
      'bench/out/',
      'test/fixtures/',
      'test/tmp/',
      '.ci/',
      '.libtorch*/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.node } },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Unused names are mistakes, but `_`-prefixed ones are deliberate (a skipped argument or element).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Lines up to 160 characters (prettier's printWidth); strings, template literals, URLs, regular expressions and comments
      // may run longer: prettier does not break them, and a message or a doc line reads better whole.
      'max-len': [
        'error',
        { code: 160, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreUrls: true, ignoreRegExpLiterals: true, ignoreComments: true },
      ],
      // TypeScript's own `import x = require('…')` is an import; a lazy require() of an optional dependency carries a disable comment saying why.
      '@typescript-eslint/no-require-imports': ['error', { allowAsImport: true }],
      // A ternary of side effects (`a ? n++ : m++`) is used on purpose; a bare expression that does nothing is still an error.
      '@typescript-eslint/no-unused-expressions': ['error', { allowTernary: true }],
      // Off: Python's whitespace sets (str.isspace) include control characters, so the regular expressions that mirror them name \x1c-\x1f.
      'no-control-regex': 'off',
      // Off: an expected message is matched as it reads, its runs of spaces included.
      'no-regex-spaces': 'off',
    },
  },
  {
    // Tests pass deliberately ill-typed values to the API (what a JavaScript caller can send) and read JSON of any shape.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // CommonJS scripts (require, module.exports).
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', parserOptions: { ecmaFeatures: { globalReturn: true } } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The library: type-aware rules over tsconfig.json's program (lib/**/*.ts).
    files: ['lib/**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A promise nobody awaits loses its error (an unhandled rejection) and its ordering.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
);
